"""The bridge: the one listening process. HTTP in here, out over each endpoint's WebSocket."""
