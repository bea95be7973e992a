"""Data movement with indices: Gather, Slice, Pad, GatherElements, GatherND, DepthToSpace,
SpaceToDepth, Resize."""
