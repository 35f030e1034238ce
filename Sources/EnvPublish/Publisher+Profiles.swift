// Stage 5 of a publish, after the ref has moved: carry the previous revision's profiles to the
// new one (ProfileTranslation), so a republish that changes one package still starts from a
// profile. Best effort: a failure here is a warning, never a failed publish.
import EnvFormat
import EnvStore

/// One profile carried from the previous revision.
public struct CarriedProfile: Sendable, Equatable {
    public var name: String
    public var chunks: Int
    public var rawBytes: UInt64
    public var fromRevision: UInt64
    public var filesDropped: Int
}

extension Publisher {
    /// Writes `profiles/<env>/<new manifest>/<name>` for each profile of `previous`'s manifest
    /// that the new revision does not already have.
    func carryProfiles(previous: Ref?, manifest encoded: [UInt8], result: inout PublishResult) {
        guard let previous, !result.unchanged, previous.manifest != result.ref.manifest else { return }
        let env = options.env
        let prefix = "profiles/\(env)/\(previous.manifest.hex)/"
        do {
            let keys = try store.list(prefix: prefix).sorted()
            guard !keys.isEmpty else { return }
            let old = try Manifest.decode(try store.get(Ref.manifestKey(previous.manifest)))
            let new = try Manifest.decode(encoded)
            for key in keys {
                let name = String(key.dropFirst(prefix.count))
                guard !name.isEmpty, !name.contains("/") else { continue }
                let target = Profile.objectKey(env: env, manifest: result.ref.manifest, name: name)
                do {
                    if try store.exists(target) { continue }
                    let p = try Profile.decode(try store.get(key))
                    guard p.manifest == previous.manifest else {
                        warn("envpublish: profile \(key) names another manifest; not carried"); continue
                    }
                    let t = ProfileTranslation.translate(p, from: old, to: new, newManifest: result.ref.manifest)
                    try store.put(target, t.profile.encode())
                    result.carriedProfiles.append(CarriedProfile(name: name, chunks: t.profile.chunks.count, rawBytes: t.rawBytes,
                                                                 fromRevision: previous.revision, filesDropped: t.filesDropped))
                } catch {
                    warn("envpublish: warning: profile \(key) not carried to revision \(result.ref.revision): \(error)")
                }
            }
        } catch {
            warn("envpublish: warning: profiles of revision \(previous.revision) not carried to revision \(result.ref.revision): \(error)")
        }
    }
}
