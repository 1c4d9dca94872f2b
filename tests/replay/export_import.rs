//! PLACEHOLDER: export → import tests are being written.
