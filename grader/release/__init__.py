"""Release: build the student notebooks from solutions/, check and validate them, fabricate test submissions."""
