package snapshot

// DecodeManifestForTest exposes the manifest decoder to the fuzz tests.
var DecodeManifestForTest = decodeManifest
