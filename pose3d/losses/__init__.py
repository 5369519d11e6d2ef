"""pose3d.losses"""
