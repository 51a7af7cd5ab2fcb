"""Model analysis: Params and MACs as the paper's tables count them."""
