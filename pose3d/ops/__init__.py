"""Python face of the custom ops (torch.ops.pose3d.*) and their pure-PyTorch references."""
