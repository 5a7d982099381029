"""UDPs built in memory for tests, from any card (the tiny model's, usually) and a made-up memory record."""

from openeo_cloudmask import udp as body
from openeo_cloudmask.release import udp_build


def fake_memory_record(card, one_date=240.0, per_date=14.5):
    """A memory record in :mod:`openeo_cloudmask.release.memory_probe`'s format, linear in the dates."""
    size, overlap = udp_build.neighborhood_window(card)
    runs = [{"dates": n, "peak_rss_mib": one_date + per_date * (n - 1)} for n in (1, 12, udp_build.DESIGN_DATES)]
    return {"model": card["id"], "onnx_sha256": card["onnx_sha256"], "chunk_px": size + 2 * overlap,
            "ort_threads": udp_build.TASK_CPUS, "design_dates": udp_build.DESIGN_DATES, "runs": runs}


def build_test_udp(card, udf=None, archive_option=None, memory=None):
    """The UDP for ``card``: the plain UDF file unless ``udf`` is given; the archive form if ``archive_option``."""
    return udp_build.build_udp(card, udf if udf is not None else body.udf_source(), memory or fake_memory_record(card),
                               udp_build.load_process_spec(), archive_option)


def self_contained_udp(card, models_dir, memory=None):
    """The self-contained UDP for ``card`` (model and card embedded in the UDF code)."""
    code = udp_build.embedded_udf_code(body.udf_source(), *udp_build.model_files(card, models_dir))
    return build_test_udp(card, code, memory=memory)
