package restore

// WalkTolerant exposes the planning walk to the external tests.
var WalkTolerant = walkTolerant
