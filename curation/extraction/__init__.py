"""From record bytes to text: decoding to Unicode, then main-text extraction from HTML."""
