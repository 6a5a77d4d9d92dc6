import ArgumentParser
import CarbonServer
import CarbonStore
import Foundation
import Logging
import NIOCore

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve", abstract: "Run the HTTP API (docs/API.md).",
        discussion: """
            Configured from the environment: CARBONSTORE_STORAGE, CARBONSTORE_HOST, CARBONSTORE_PORT, \
            CARBONSTORE_API_KEYS (role:sha256hex entries, made by `carbonstore keys new`), \
            CARBONSTORE_API_KEYS_FILE, CARBONSTORE_MAX_BODY_BYTES, CARBONSTORE_MAX_BATCH, \
            CARBONSTORE_MAX_USER_ID_BYTES, CARBONSTORE_HEADER_TIMEOUT_MS, CARBONSTORE_BODY_TIMEOUT_MS, \
            CARBONSTORE_SEND_TIMEOUT_MS, CARBONSTORE_IDLE_TIMEOUT_MS, \
            CARBONSTORE_SHUTDOWN_DEADLINE_MS, CARBONSTORE_LOG_LEVEL.
            On the embedded default storage with no key configured, it makes an admin key for the run \
            and prints it once. Stops on SIGTERM, SIGINT or SIGHUP (unless started with SIGHUP ignored, as by nohup) after the requests in flight.
            """)

    @OptionGroup var storage: StorageOptions
    @Option(help: "Listen address (default: $CARBONSTORE_HOST, else 127.0.0.1).") var host: String?
    @Option(help: "Listen port, 0 for any free port (default: $CARBONSTORE_PORT, else 8080).") var port: Int?

    func run() async throws {
        try await runReportingErrors {
            var configuration = try ServerConfiguration.fromEnvironment(environmentVariable) { path in
                var isDirectory: ObjCBool = false
                guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                    throw KeyFileError(problem: "there is no such file")
                }
                guard !isDirectory.boolValue else { throw KeyFileError(problem: "it is a directory") }
                try Self.refuseKeyFileOthersMayChange(path)
                guard let data = FileManager.default.contents(atPath: path) else {
                    throw KeyFileError(problem: "this process may not read it")
                }
                guard let text = String(data: data, encoding: .utf8) else {
                    throw KeyFileError(problem: "it is not UTF-8 text")
                }
                return text
            }
            configuration.storage = storage.uriText
            if let host { configuration.host = host }
            if let port {
                guard (0...65535).contains(port) else {
                    throw InvalidRequestError("--port \(port) is not a port (0 to 65535)")
                }
                configuration.port = port
            }
            // A storage URI that cannot be used is named before what else is missing (a key).
            _ = try StorageURI(configuration.storage)
            try Self.checkListenHost(configuration.host, origin: host != nil ? "--host" : "CARBONSTORE_HOST")
            if configuration.keys.isEmpty {
                guard configuration.storage == StorageURI.defaultURI else {
                    throw InvalidRequestError(
                        "no API key is configured for storage '\(configuration.storage)'; make one with `carbonstore keys new --role admin` and set CARBONSTORE_API_KEYS to its entry"
                    )
                }
                let (key, entry) = APIKeys.newKey(role: .admin)
                configuration.keys = APIKeys([entry])
                FileHandleStderr.write(
                    """
                    carbonstore: no API key is configured; this run accepts the admin key
                    carbonstore:   \(key)   (shown once; configure your own with `carbonstore keys new`)

                    """)
            }
            let level = configuration.logLevel
            LoggingSystem.bootstrap { label in JSONLogHandler(label: label, level: level) }
            let logger = Logger(label: "carbonstore")
            let metrics = ServerMetrics()
            let store = try await storage.makeStore()
            if let volume = store.storage as? PathStorage { Self.noteDataDirectory(volume, logger) }
            let api = CarbonAPI(
                store: store, configuration: configuration, metrics: metrics, drain: DrainState())
            let service = CarbonService(api: api, logger: logger)
            let storageText = configuration.storage
            do {
                try await service.run { channel in
                    logger.notice(
                        "listening",
                        metadata: [
                            "address": .string(channel.localAddress.map { "\($0)" } ?? "?"),
                            "port": .stringConvertible(channel.localAddress?.port ?? -1),
                            "storage": .string(storageText),
                            "format": .string(store.options.codec.writtenFormat),
                        ])
                }
            } catch let error as any CarbonStoreError {
                throw error
            } catch {
                let text = "\(error)"
                // An address that is not this machine's: the host's fault, not the port's.
                if let e = error as? IOError, e.errnoCode == EADDRNOTAVAIL || text.contains("errno: 99)") {
                    throw ListenAddressError(
                        origin: host != nil ? "--host" : "CARBONSTORE_HOST", host: configuration.host,
                        underlying: text)
                }
                throw ServeFailedError(host: configuration.host, port: configuration.port, underlying: text)
            }
        }
    }
}

extension ServeCommand {
    /// Says in the log that the data directory was made by this start (a mount point whose volume
    /// is not mounted yet makes a folder on the machine's own disk: the file system named tells),
    /// and warns that a FUSE file system must be reached through one mount by every process.
    static func noteDataDirectory(_ volume: PathStorage, _ logger: Logger) {
        let fileSystem = volume.fileSystemName ?? "unknown"
        if volume.createdDataDirectory {
            logger.notice(
                "created the data directory: it did not exist (if it should be on a volume, is the volume mounted?)",
                metadata: ["path": .string(volume.root), "fileSystem": .string(fileSystem)])
        }
        if fileSystem == "fuse" {
            logger.warning(
                "the data directory is on a FUSE file system: every process that uses it must reach it through this same mount; two mounts of one folder, or a mount and the folder under it, share neither locks nor caches, and updates made through both can be lost (docs/STORAGE.md)",
                metadata: ["path": .string(volume.root)])
        }
    }
}

/// The listen address is not one of this machine's, or not up yet (an address still being
/// configured at boot): exit code 6, so that a supervisor tries again, with the option or variable
/// to fix if it stays so.
struct ListenAddressError: CarbonStoreError {
    var origin: String
    var host: String
    var underlying: String
    var kind: ErrorKind { .unavailable }
    var description: String {
        "\(origin) '\(host)' is not an address of this machine, or not up yet: \(underlying); give one of its addresses, such as 127.0.0.1, or 0.0.0.0 for every interface"
    }
}

/// The server could not start or stopped with an error (an address in use).
struct ServeFailedError: CarbonStoreError {
    var host: String
    var port: Int
    var underlying: String
    var kind: ErrorKind { .unavailable }
    var description: String {
        "the service on \(host):\(port) failed: \(underlying); is another process using the port? choose another with --port or CARBONSTORE_PORT"
    }
}

/// Why the key file cannot be read, in a few words.
struct KeyFileError: Error, CustomStringConvertible {
    var problem: String
    var description: String { problem }
}

extension ServeCommand {
    /// A keys file that every user of the machine may write, or that sits in a folder where every
    /// user may replace it (writable by others, without the sticky bit), lets any of them add an
    /// admin key. On a read-only mount (a Kubernetes Secret volume, whatever its mode bits) nobody
    /// can, and the mode is not held against it.
    static func refuseKeyFileOthersMayChange(_ path: String) throws {
        var fs = statvfs()
        if statvfs(path, &fs) == 0, fs.f_flag & UInt(ST_RDONLY) != 0 { return }
        var file = stat()
        if stat(path, &file) == 0, file.st_mode & S_IWOTH != 0 {
            throw KeyFileError(
                problem:
                    "every user of this machine may write it (mode \(String(file.st_mode & 0o777, radix: 8))), and so add a key of their own; remove that right (chmod o-w)"
            )
        }
        // The folder that holds the file itself, through any symbolic link.
        let resolved = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        let folder = (resolved as NSString).deletingLastPathComponent
        var dir = stat()
        if stat(folder.isEmpty ? "." : folder, &dir) == 0, dir.st_mode & S_IWOTH != 0,
            dir.st_mode & S_ISVTX == 0
        {
            throw KeyFileError(
                problem:
                    "every user of this machine may replace it: its folder \(folder) is writable by all without the sticky bit; keep the file in a folder only its owner may change"
            )
        }
    }

    /// A listen address that does not resolve fails here, naming where it came from (exit code
    /// 64), rather than at the bind, whose error would blame the port.
    static func checkListenHost(_ host: String, origin: String) throws {
        var hints = addrinfo()
        hints.ai_flags = AI_PASSIVE
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        let code = getaddrinfo(host, nil, &hints, &result)
        if let result { freeaddrinfo(result) }
        guard code == 0 else {
            throw InvalidRequestError(
                "\(origin) '\(host)' is not an address this machine can listen on (\(String(cString: gai_strerror(code)))); give an IP address of this machine or a name that resolves to one, such as 127.0.0.1, or 0.0.0.0 for every interface"
            )
        }
    }
}
