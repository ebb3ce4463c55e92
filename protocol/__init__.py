"""cellguard wire protocol: Construct definitions (``messages``) and the host codec."""

from .messages import MAX_PAYLOAD, PROTOCOL_MAJOR, PROTOCOL_MINOR

__all__ = ["MAX_PAYLOAD", "PROTOCOL_MAJOR", "PROTOCOL_MINOR"]
