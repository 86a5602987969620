"""`dsagent status`: what the running agent holds, for the person at the node."""
