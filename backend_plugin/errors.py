"""openEO-style errors raised by the registered processes, before any pixel is computed.

Each error has a ``code`` from the openEO API's error list (or a process spec's
``exceptions``) and a ``message`` that says which process and parameter is
wrong and how to fix it. A backend shows both to the user; openeo-driver maps
them onto its own ``OpenEOApiException`` (see ``openeo_driver_plugin.py``).
Errors from the engine (``CloudMaskError``) are translated, keeping the
engine's code in ``engine_code``.
"""

from openeo_cloudmask.udf.cloud_mask import CloudMaskError, ModelFileError


class OpenEOProcessError(Exception):
    """Base class: ``code`` (openEO error code), ``message`` and HTTP-ish ``status_code``."""

    code = "Internal"
    status_code = 500

    def __init__(self, message: str, code: str = None, engine_code: str = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.engine_code = engine_code

    def __str__(self):
        return f"[{self.code}] {self.message}"


class ProcessParameterInvalid(OpenEOProcessError, ValueError):
    code = "ProcessParameterInvalid"
    status_code = 400

    def __init__(self, process: str, parameter: str, reason: str, engine_code: str = None):
        super().__init__(
            f"The value passed for parameter '{parameter}' in process '{process}' is invalid: {reason}",
            engine_code=engine_code,
        )
        self.process = process
        self.parameter = parameter
        self.reason = reason


class ProcessParameterRequired(OpenEOProcessError, ValueError):
    code = "ProcessParameterRequired"
    status_code = 400

    def __init__(self, process: str, parameter: str):
        super().__init__(f"Process '{process}' parameter '{parameter}' is required.")


class ProcessParameterUnsupported(OpenEOProcessError, ValueError):
    code = "ProcessParameterUnsupported"
    status_code = 400

    def __init__(self, process: str, parameter: str, known):
        super().__init__(
            f"Process '{process}' does not support parameter '{parameter}'; its parameters are {sorted(known)}."
        )


class ProcessUnsupported(OpenEOProcessError, ValueError):
    code = "ProcessUnsupported"
    status_code = 400


class ProcessGraphParameterMissing(OpenEOProcessError, ValueError):
    code = "ProcessGraphParameterMissing"
    status_code = 400


class ModelUnavailable(OpenEOProcessError):
    """The model (card or ONNX file) cannot be found or is corrupt: an operator problem, not a user one."""

    code = "ModelUnavailable"
    status_code = 500


def from_engine_error(error: CloudMaskError, process: str, parameter: str) -> OpenEOProcessError:
    """Translate an engine error into the openEO error a user sees, naming the process and parameter."""
    if isinstance(error, ModelFileError):
        return ModelUnavailable(f"Process '{process}': {error}", engine_code=error.code)
    return ProcessParameterInvalid(process, parameter, str(error), engine_code=error.code)
