"""One path from a resolved preset to a trained model: factory, learn loop, callbacks, run directories."""
