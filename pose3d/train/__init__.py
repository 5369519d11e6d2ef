"""pose3d.train"""
