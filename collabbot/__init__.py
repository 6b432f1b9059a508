"""CollabBot: owns the follow-up of cross-department work in group chats."""

__version__ = "0.1.0"
