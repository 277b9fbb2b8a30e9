package supervisor

// BareCluster is bareCluster for the external tests.
var BareCluster = bareCluster
