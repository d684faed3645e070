"""Generated protobuf modules (`make proto`); never edited by hand."""
