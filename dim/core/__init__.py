"""The toolkit core: what DIM, InfoGAN and search all stand on, and that knows none of them.

Modules (import them directly; this package imports nothing on its own):

* :mod:`dim.core.images`: PIL image -> the model's uint8 grid, and uint8 -> [-1, 1];
* :mod:`dim.core.datasets`: named datasets and :func:`~dim.core.datasets.load_dataset`, the way to load any dataset;
* :mod:`dim.core.files`: image files and folders, decoded when read or all at once, and the decode cache;
* :mod:`dim.core.memory`: :class:`~dim.core.memory.ImageDataset`, decoded images in memory, and whether they fit;
* :mod:`dim.core.shapes`: the generated ``shapes`` images;
* :mod:`dim.core.device`: device choice (CUDA, then MPS, then CPU) and seeding;
* :mod:`dim.core.runs`: run directories, ``config.json``, RNG state, the result of a training call;
* :mod:`dim.core.checkpoint`: the one checkpoint layout, written atomically and loaded weights-only;
* :mod:`dim.core.registry`: which loader turns a checkpoint of each kind into features;
* :mod:`dim.core.metrics`: ``metrics.csv`` (+ TensorBoard, + ``curves.png``) and on-device metric windows;
* :mod:`dim.core.features`: :class:`~dim.core.features.FeatureExtractor`, the interface of every trained model;
* :mod:`dim.core.embedding`: :func:`~dim.core.embedding.embed_images`, the one way to embed a set of images;
* :mod:`dim.core.ray_embedding`: the same with Ray Data, on a local Ray or a cluster (optional ``ray`` extra);
* :mod:`dim.core.probes`: weighted kNN, the linear probe and neighbour grids of any feature extractor;
* :mod:`dim.core.distributed`: data-parallel helpers under ``torchrun``;
* :mod:`dim.core.grids`: query-and-neighbours pictures.
"""
