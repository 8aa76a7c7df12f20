"""Data: the synthetic RGB-D portrait renderer and the folder format / training data set.

``portrait.data.synthetic`` renders identity groups of portraits with exact depth (numpy + the face
module); ``portrait.data.folder`` reads and writes the folder format (and plain folders of user RGB +
depth) and provides :class:`~portrait.data.folder.PortraitDataset` for training.
"""
