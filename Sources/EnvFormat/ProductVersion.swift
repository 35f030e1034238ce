/// The release version of envmount and envpublish: the one place it is written. Tools/package.sh
/// reads it from this file to name the tarball and the .deb.
public enum ProductVersion {
    public static let version = "0.2.0"

    /// What `--version` prints: the release and the store format it reads and writes.
    public static var line: String { "\(version) (store format \(Manifest.formatVersion))" }
}
