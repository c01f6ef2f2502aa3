"""The hub: Wiretide's HTTP and WebSocket API over the stored calls and the live calls
topic (the web UI is served from here too, later). `wiretide hub` runs it; see app.py
for the endpoints, auth.py for who may call them."""
