"""Errors a user can cause. The CLI and the UI show their message, never a traceback."""


class LabError(Exception):
    """Base class: the message is written for the user."""


class UnknownNameError(LabError, KeyError):
    def __init__(self, what: str, name: str, known: list[str]):
        self.name, self.known = name, known
        super().__init__(f"Unknown {what} '{name}'. Known: {', '.join(known)}")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class DatasetNotFoundError(LabError):
    pass


class DivergedError(LabError):
    pass


class CancelledError(LabError):
    pass
