"""Past one machine: scoring and fine-tuning on a Ray cluster, the store staying the single source of truth."""
