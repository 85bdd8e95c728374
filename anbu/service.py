"""The composition root: builds the pool, broker client, telephony and scheduler, and wires them."""
