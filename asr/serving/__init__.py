"""The HTTP/WebSocket server and its web page."""
