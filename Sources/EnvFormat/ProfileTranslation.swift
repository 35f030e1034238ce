/// Carries a profile recorded on one manifest to another (a republish) through the files it
/// read. Each chunk of the old profile is cut back into the (file path, byte range) pieces it
/// holds in the old manifest; each piece is looked up by path in the new manifest and replaced by
/// the new chunks that cover the same range (clamped to the new file's size). Files that are gone,
/// or are no longer regular files, are dropped. The result keeps first-read order and names each
/// chunk once.
///
/// A chunk holds bytes of several consecutive files, so a piece is "this part of this file was in
/// a chunk the run read", not necessarily bytes the run read itself: the carried profile may hold
/// a few more chunks than a fresh recording, bounded by one chunk per piece. An unchanged file is
/// cut into the same chunks again, so its pieces map to the very chunks of the old profile.
public enum ProfileTranslation {
    public struct Outcome: Sendable, Equatable {
        public var profile: Profile
        /// Raw (uncompressed) bytes of the chunks in `profile`.
        public var rawBytes: UInt64
        /// Distinct files whose pieces were carried / dropped (gone or no longer a regular file).
        public var filesCarried: Int
        public var filesDropped: Int
        /// Chunks of the old profile that the old manifest does not name (skipped).
        public var unknownChunks: Int
    }

    /// A run of a file's bytes that lived in one chunk.
    struct Piece {
        var owner: Int
        var offset: UInt64
        var length: UInt64
    }

    public static func translate(_ profile: Profile, from old: Manifest, to new: Manifest, newManifest: ChunkID) -> Outcome {
        var oldIndex: [ChunkID: Int] = [:]
        for (k, c) in old.chunks.enumerated() where oldIndex[c.id] == nil { oldIndex[c.id] = k }

        // The old chunks the profile names, and the file pieces each of them holds.
        var wanted: [Int: Int] = [:]          // old chunk index -> slot in `pieces`
        var order: [Int] = []
        var unknown = 0
        for id in profile.chunks {
            guard let k = oldIndex[id] else { unknown += 1; continue }
            if wanted[k] == nil { wanted[k] = order.count; order.append(k) }
        }
        var pieces = [[Piece]](repeating: [], count: order.count)
        for (i, e) in old.entries.enumerated() where e.kind == .regular && e.owner == UInt32(i) {
            var pos: UInt64 = 0
            for s in old.fileSpans(i) {
                let span = old.spans[s]
                if span.chunk != Manifest.Span.zeros, let slot = wanted[Int(span.chunk)] {
                    pieces[slot].append(Piece(owner: i, offset: pos, length: UInt64(span.length)))
                }
                pos += UInt64(span.length)
            }
        }

        var newOwner: [Int: Int?] = [:]       // old owner entry -> new owner entry (nil: dropped)
        var starts: [Int: [UInt64]] = [:]     // new owner -> file offset where each span starts
        var seen = Set<Int>()
        var chunks: [ChunkID] = []
        var raw: UInt64 = 0
        for slot in order.indices {
            for p in pieces[slot] {
                let target: Int?
                if let t = newOwner[p.owner] { target = t } else {
                    var t: Int? = nil
                    if let n = new.resolve(old.path(p.owner)), new.entries[n].kind == .regular {
                        t = Int(new.entries[n].owner)
                    }
                    newOwner[p.owner] = t
                    target = t
                }
                guard let n = target else { continue }
                let size = new.entries[n].size
                guard p.offset < size else { continue }
                let end = min(p.offset + p.length, size)
                let spans = new.fileSpans(n)
                if starts[n] == nil {
                    var st: [UInt64] = []
                    st.reserveCapacity(spans.count)
                    var pos: UInt64 = 0
                    for s in spans { st.append(pos); pos += UInt64(new.spans[s].length) }
                    starts[n] = st
                }
                let st = starts[n]!
                // The last span starting at or before `p.offset`, then every span up to `end`.
                var lo = 0, hi = st.count
                while hi - lo > 1 { let mid = (lo + hi) / 2; if st[mid] <= p.offset { lo = mid } else { hi = mid } }
                var k = lo
                while k < st.count && st[k] < end {
                    let span = new.spans[spans.lowerBound + k]
                    let c = Int(span.chunk)
                    if span.chunk != Manifest.Span.zeros, c < new.chunks.count, seen.insert(c).inserted {
                        chunks.append(new.chunks[c].id)
                        raw += UInt64(new.chunks[c].rawSize)
                    }
                    k += 1
                }
            }
        }
        let carried = newOwner.values.filter { $0 != nil }.count
        return Outcome(profile: Profile(manifest: newManifest, chunks: chunks), rawBytes: raw,
                       filesCarried: carried, filesDropped: newOwner.count - carried, unknownChunks: unknown)
    }
}
