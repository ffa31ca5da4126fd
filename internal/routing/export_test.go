package routing

// Exported for the tests of package routing_test.
var (
	SubsetBytesForTest         = subsetBytes
	OwnerReferenceBytesForTest = ownerReferenceBytes
)
