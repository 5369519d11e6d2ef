"""pose3d.eval"""
