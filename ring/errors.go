package ring

import "errors"

var (
	// ErrClosed is returned by blocking calls on a Ring that has stopped,
	// because Close was called or the context given to Watch ended.
	ErrClosed = errors.New("ring: closed")
	// ErrInvalidMember is returned by EncodeMember and DecodeMember for a
	// member record that cannot be used: no ID, an ID with a '/' in it, or
	// bytes that are not a member record.
	ErrInvalidMember = errors.New("ring: invalid member")
	// ErrNoClient is returned by Watch when it is given no etcd client.
	ErrNoClient = errors.New("ring: no etcd client")
)
