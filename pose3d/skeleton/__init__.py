"""pose3d.skeleton"""
