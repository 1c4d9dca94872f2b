//! PLACEHOLDER: legacy import tests are being written.
