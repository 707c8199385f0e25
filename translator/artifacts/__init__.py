"""What a run leaves on disk and how it is read back: checkpoints and exported models.

    checkpoint.py  the bundle layout (make_bundle), CheckpointMeta (the one metadata reader, legacy defaults
                   resolved once), safe (weights_only) loading, averaging; a new checkpoint field is written
                   by make_bundle and read, with its legacy default, by CheckpointMeta
    export.py      `translator export`: Transformer checkpoint -> CTranslate2 model directory
"""
