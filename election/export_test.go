package election

// Confirm exposes the post-campaign check to the external tests.
var Confirm = (*Election).confirm
