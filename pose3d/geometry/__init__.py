"""pose3d.geometry"""
