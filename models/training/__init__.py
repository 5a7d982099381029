"""Training, export and evaluation of the default cloud-mask model (``models/cloudmask-s2-4band.onnx``).

Retrain (fixed seed; reads ``$OPENEO_CLOUDMASK_SHARED_DATA`` or ``../shared/data``)::

    python -m openeo_cloudmask.models.training.train
    python -m openeo_cloudmask.models.training.evaluate
    python -m openeo_cloudmask.models.training.speed

Modules: ``scenes`` (shared scenes and the split by scene), ``synthetic``
(cloud, semi-transparent cloud and shadow generator, numpy only), ``teacher``
(ukis-csmask ensemble labels), ``network`` (the U-Net, torch), ``train``,
``export`` (ONNX, torch), ``card`` (model card), ``evaluate`` and ``speed``
(onnxruntime only). torch is needed only for ``network``, ``export`` and the
training step itself.
"""
