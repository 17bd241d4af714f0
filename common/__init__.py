"""Low-level pieces that more than one role needs: the Episode record and the weight-bucket transport.

Every role may import this package; it imports no role (and no Ray at module level: parts of it run
inside vLLM worker processes).
"""
