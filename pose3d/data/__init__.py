"""pose3d.data"""
