import CarbonStore
import Logging

/// How `carbonstore serve` is configured: from the environment (docs/API.md, "Configuration"),
/// with `--host` and `--port` winning over their variables.
public struct ServerConfiguration: Sendable {
    public var storage: String = StorageURI.defaultURI
    public var host: String = "127.0.0.1"
    public var port: Int = 8080
    public var keys: APIKeys = APIKeys([])
    public var maxBodyBytes: Int = 1 << 20
    public var maxBatch: Int = 1000
    public var maxUserIDBytes: Int = UserKeys.maximumUserIDBytes
    public var headerTimeout: Duration = .seconds(10)
    public var bodyTimeout: Duration = .seconds(20)
    public var idleTimeout: Duration = .seconds(60)
    public var sendTimeout: Duration = .seconds(10)
    public var shutdownDeadline: Duration = .seconds(25)
    public var logLevel: Logger.Level = .info

    public init() {}

    /// A variable that cannot be used, with what is wrong and a correct example.
    public struct InvalidSettingError: CarbonStoreError {
        public var name: String
        public var value: String
        public var problem: String
        public var example: String
        public var kind: ErrorKind { .invalidInput }
        public var description: String {
            "\(name)='\(value.prefix(200))' \(problem); for example \(name)=\(example)"
        }
    }

    /// Reads the configuration from `environment` (a lookup of set, non-empty variables) and the
    /// key file it may name, through `readFile`.
    public static func fromEnvironment(
        _ environment: (String) -> String?, readFile: (String) throws -> String
    ) throws -> ServerConfiguration {
        var c = ServerConfiguration()
        if let s = environment("CARBONSTORE_STORAGE") { c.storage = s }
        if let s = environment("CARBONSTORE_HOST") { c.host = s }
        func integer(_ name: String, _ range: ClosedRange<Int>, example: String) throws -> Int? {
            guard let text = environment(name) else { return nil }
            guard let n = Int(text), range.contains(n) else {
                throw InvalidSettingError(
                    name: name, value: text,
                    problem: "is not a whole number from \(range.lowerBound) to \(range.upperBound)",
                    example: example)
            }
            return n
        }
        if let n = try integer("CARBONSTORE_PORT", 0...65535, example: "8080") { c.port = n }
        if let n = try integer("CARBONSTORE_MAX_BODY_BYTES", 1024...(64 << 20), example: "1048576") {
            c.maxBodyBytes = n
        }
        if let n = try integer("CARBONSTORE_MAX_BATCH", 1...100_000, example: "1000") { c.maxBatch = n }
        if let n = try integer(
            "CARBONSTORE_MAX_USER_ID_BYTES", 1...UserKeys.maximumUserIDBytes, example: "128")
        {
            c.maxUserIDBytes = n
        }
        let day = 86_400_000
        if let n = try integer("CARBONSTORE_HEADER_TIMEOUT_MS", 100...day, example: "10000") {
            c.headerTimeout = .milliseconds(n)
        }
        if let n = try integer("CARBONSTORE_BODY_TIMEOUT_MS", 100...day, example: "20000") {
            c.bodyTimeout = .milliseconds(n)
        }
        if let n = try integer("CARBONSTORE_IDLE_TIMEOUT_MS", 100...day, example: "60000") {
            c.idleTimeout = .milliseconds(n)
        }
        if let n = try integer("CARBONSTORE_SEND_TIMEOUT_MS", 100...day, example: "10000") {
            c.sendTimeout = .milliseconds(n)
        }
        if let n = try integer("CARBONSTORE_SHUTDOWN_DEADLINE_MS", 0...day, example: "25000") {
            c.shutdownDeadline = .milliseconds(n)
        }
        if let text = environment("CARBONSTORE_LOG_LEVEL") {
            guard let level = Logger.Level(rawValue: text.lowercased()) else {
                throw InvalidSettingError(
                    name: "CARBONSTORE_LOG_LEVEL", value: text,
                    problem: "is not one of trace, debug, info, notice, warning, error, critical",
                    example: "info")
            }
            c.logLevel = level
        }
        var entries: [APIKeyEntry] = []
        do {
            if let text = environment("CARBONSTORE_API_KEYS") {
                entries += try APIKeys.parse(text, source: "CARBONSTORE_API_KEYS")
            }
            if let path = environment("CARBONSTORE_API_KEYS_FILE") {
                let text: String
                do { text = try readFile(path) } catch {
                    throw InvalidSettingError(
                        name: "CARBONSTORE_API_KEYS_FILE", value: path,
                        problem: "cannot be read (\(error))", example: "/etc/carbonstore/keys")
                }
                entries += try APIKeys.parse(text, source: "CARBONSTORE_API_KEYS_FILE \(path)")
            }
        } catch let error as InvalidKeyEntryError {
            let inFile = error.source.hasPrefix("CARBONSTORE_API_KEYS_FILE")
            throw InvalidSettingError(
                name: inFile ? "CARBONSTORE_API_KEYS_FILE" : "CARBONSTORE_API_KEYS",
                value: inFile ? environment("CARBONSTORE_API_KEYS_FILE") ?? "" : "…",
                problem: "has a bad entry: \(error.description)",
                example: inFile
                    ? "/etc/carbonstore/keys (a file of role:sha256hex lines)" : "write:<64 hex digits>")
        }
        c.keys = APIKeys(entries)
        return c
    }
}
