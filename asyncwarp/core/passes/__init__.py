"""IR-to-IR passes: async lowering, lane folding, and the pipeline that chains them."""
