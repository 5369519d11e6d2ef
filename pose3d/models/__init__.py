"""pose3d.models"""
