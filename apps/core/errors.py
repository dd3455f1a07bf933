"""Errors that services raise and every interface (page, API, task) turns into words."""


class ServiceError(Exception):
    """A refusal a person can read: a stable `code`, the sentence shown, and an HTTP status."""

    status = 400

    def __init__(self, code: str, message: str, *, status: int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        if status is not None:
            self.status = status

    def as_dict(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


class NotFound(ServiceError):
    status = 404

    def __init__(self, message: str = "Not found.", code: str = "not_found"):
        super().__init__(code, message)
