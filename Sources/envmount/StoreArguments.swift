import ArgumentParser
import EnvDaemon
import EnvStore

/// Options shared by the subcommands that open a store.
struct StoreArguments: ParsableArguments {
    @Option(help: "S3 endpoint URL (R2, MinIO); default AWS_ENDPOINT_URL or AWS.")
    var endpoint: String?

    @Option(help: "S3 region (R2: auto); default AWS_REGION or the profile's.")
    var region: String?

    @Option(name: .customLong("mirror"), help: "Another base URL with the same store (http stores; repeatable).")
    var mirrors: [String] = []

    @Option(help: "Seconds after which a chunk that cannot be fetched fails the read with EIO.")
    var timeout: Double = 60

    @Option(help: ArgumentHelp("PEM file of the CAs to trust for https:// and s3:// over TLS (a private CA, MinIO).",
                               discussion: "Default: AWS_CA_BUNDLE or the AWS profile's ca_bundle (s3:// only), else CURL_CA_BUNDLE, else SSL_CERT_FILE, else the system store."),
            completion: .file())
    var caBundle: String?

    @Option(help: ArgumentHelp("Seconds the store gets to answer for the ref when a cached copy exists; then the cached revision is mounted offline.",
                               discussion: "A refused connection or an unknown host name is an answer at once. Without a cached ref the store gets --timeout."))
    var refTimeout: Double = 2

    var options: StoreOptions {
        var o = StoreOptions()
        o.endpoint = endpoint
        o.region = region
        o.mirrors = mirrors
        o.requestDeadline = timeout
        o.caBundle = caBundle.map(Mountpoints.absolute)
        return o
    }
}
