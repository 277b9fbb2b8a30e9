package election

import (
	"errors"

	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/lease"
)

// Sentinel errors of the election package; test for them with errors.Is.
var (
	// ErrInvalidName: an election name fails actor.ValidateName or holds a
	// '/'. It is actor.ErrInvalidName.
	ErrInvalidName = actor.ErrInvalidName
	// ErrNoLeader: no candidate holds the election.
	ErrNoLeader = errors.New("election: no leader")
	// ErrNotLeader: a campaign returned but this node's leader key is not
	// the leader any more (its lease ended during the campaign, or the key
	// was deleted), or Proclaim found the key gone.
	ErrNotLeader = errors.New("election: not leader")
	// ErrBusy: this Election already has a campaign or a leadership in
	// progress; one node holds at most one candidacy per election.
	ErrBusy = errors.New("election: campaign or leadership already in progress")
	// ErrResigned: the leadership ended because Resign was called.
	ErrResigned = errors.New("election: resigned")
	// ErrLeaderKeyLost: the leadership ended because its leader key was
	// deleted behind the node's back.
	ErrLeaderKeyLost = errors.New("election: leader key deleted")
	// ErrEpochLost: the node's lease epoch was lost; a leadership or
	// campaign under it ended. It is lease.ErrEpochLost, and the error also
	// wraps the epoch's own reason (lease.ErrDeadlinePassed,
	// lease.ErrLeaseNotFound or lease.ErrClosed).
	ErrEpochLost = lease.ErrEpochLost
)
