package synth

import "math/rand/v2"

// Stream kinds keep the random streams of different registers (and of the decisions
// about them) independent: changing how parcels are drawn never shifts a person.
const (
	kindPerson uint64 = iota + 1
	kindOrg
	kindParcel
	kindIndicator
	kindInvalid  // whether a row is planted invalid, and how
	kindLegalRep // which person represents an organization
	kindHolder   // who holds a parcel
	kindLicence  // a licence row's own draws
	kindPermit   // which organization an extra permit goes to
	kindLicensee // which persons hold personal licences (a permutation)
)

// mix is the SplitMix64 finalizer: a fast bijective scrambler of 64 bits.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// hash3 derives a well-mixed 64-bit value from the seed, a stream kind and an index.
func hash3(seed, kind uint64, i int) uint64 {
	return mix(mix(seed^kind*0x9e3779b97f4a7c15) ^ uint64(i))
}

// unit maps a hash to [0, 1).
func unit(h uint64) float64 { return float64(h>>11) / (1 << 53) }

// rowRand is a reusable per-row random stream: row i of a register always draws the
// same numbers whatever was generated before it, which is what makes rows
// reproducible one at a time.
type rowRand struct {
	pcg rand.PCG
	r   *rand.Rand
}

func (x *rowRand) at(seed, kind uint64, i int) *rand.Rand {
	if x.r == nil {
		x.r = rand.New(&x.pcg)
	}
	x.pcg.Seed(mix(seed^kind*0x9e3779b97f4a7c15), uint64(i))
	return x.r
}

// perm is a keyed pseudo-random permutation of [0, n): a four-round Feistel network on
// the smallest even number of bits covering n, cycle-walking values that land outside.
// It turns a row index into a unique identifier slot without remembering which slots
// were used, so identifiers never collide and any row can be regenerated alone.
type perm struct {
	n    uint64
	half uint
	mask uint64
	keys [4]uint64
}

func newPerm(n, seed, kind uint64) perm {
	bits := uint(1)
	for uint64(1)<<bits < n {
		bits++
	}
	if bits%2 == 1 {
		bits++
	}
	p := perm{n: n, half: bits / 2, mask: 1<<(bits/2) - 1}
	for r := range p.keys {
		p.keys[r] = hash3(seed, kind, 1000+r)
	}
	return p
}

func (p *perm) at(i uint64) uint64 {
	x := i
	for {
		l, r := x>>p.half, x&p.mask
		for _, k := range p.keys {
			l, r = r, l^(mix(r^k)&p.mask)
		}
		x = l<<p.half | r
		if x < p.n {
			return x
		}
	}
}

// pick returns a random element of xs.
func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

// weighted returns the index drawn from cumulative weights cum (ascending, last = total).
func weighted(r *rand.Rand, cum []int) int {
	x := r.IntN(cum[len(cum)-1])
	for i, c := range cum {
		if x < c {
			return i
		}
	}
	return len(cum) - 1
}
