"""Human motion for the synthetic data: procedural actions (the default, no files needed)
and BVH motion capture clips, both as 17-joint Human3.6M poses in world mm, z up."""

from pose3d.data.motion.body import BodyShape, sample_subject
from pose3d.data.motion.bvh import BvhClip, bvh_to_h36m17, clips_from_bvh_files, load_bvh
from pose3d.data.motion.procedural import ACTIONS, generate_clip
from pose3d.data.motion.style import MotionStyle, sample_style

__all__ = ["ACTIONS", "BodyShape", "BvhClip", "MotionStyle", "bvh_to_h36m17",
           "clips_from_bvh_files", "generate_clip", "load_bvh", "sample_style", "sample_subject"]
