"""The v2 inference protocol: request / response types, datatypes, codecs and error codes."""
