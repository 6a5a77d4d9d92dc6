import CarbonServer
import CarbonStore
import Testing

@Suite struct ConfigurationTests {
    static func configuration(_ variables: [String: String], file: String = "") throws -> ServerConfiguration
    {
        try ServerConfiguration.fromEnvironment({ variables[$0] }, readFile: { _ in file })
    }

    @Test func defaults() throws {
        let c = try Self.configuration([:])
        #expect(c.storage == StorageURI.defaultURI)
        #expect(c.host == "127.0.0.1" && c.port == 8080)
        #expect(c.keys.isEmpty)
        #expect(c.maxBodyBytes == 1 << 20 && c.maxBatch == 1000 && c.maxUserIDBytes == 256)
        #expect(c.shutdownDeadline == .seconds(25))
    }

    @Test func everyVariableIsRead() throws {
        let write = APIKeys.newKey(role: .write)
        let admin = APIKeys.newKey(role: .admin)
        let c = try Self.configuration(
            [
                "CARBONSTORE_STORAGE": "memory:", "CARBONSTORE_HOST": "0.0.0.0", "CARBONSTORE_PORT": "9000",
                "CARBONSTORE_API_KEYS": " \(write.entry.entry) ,\n", "CARBONSTORE_API_KEYS_FILE": "/keys",
                "CARBONSTORE_MAX_BODY_BYTES": "2048", "CARBONSTORE_MAX_BATCH": "10",
                "CARBONSTORE_MAX_USER_ID_BYTES": "64", "CARBONSTORE_HEADER_TIMEOUT_MS": "500",
                "CARBONSTORE_BODY_TIMEOUT_MS": "700", "CARBONSTORE_IDLE_TIMEOUT_MS": "900",
                "CARBONSTORE_SHUTDOWN_DEADLINE_MS": "1000", "CARBONSTORE_LOG_LEVEL": "DEBUG",
            ], file: "# the admin\n\(admin.entry.entry)  # ops\n\n")
        #expect(c.storage == "memory:" && c.host == "0.0.0.0" && c.port == 9000)
        #expect(c.keys.entries == [write.entry, admin.entry])
        #expect(c.keys.match(write.key)?.role == .write)
        #expect(c.keys.match(admin.key)?.role == .admin)
        #expect(c.keys.match(write.key + "x") == nil)
        #expect(c.maxBodyBytes == 2048 && c.maxBatch == 10 && c.maxUserIDBytes == 64)
        #expect(c.headerTimeout == .milliseconds(500) && c.bodyTimeout == .milliseconds(700))
        #expect(c.idleTimeout == .milliseconds(900) && c.shutdownDeadline == .seconds(1))
        #expect(c.logLevel == .debug)
    }

    @Test(arguments: [
        ("CARBONSTORE_PORT", "http"), ("CARBONSTORE_PORT", "70000"), ("CARBONSTORE_MAX_BATCH", "0"),
        ("CARBONSTORE_MAX_USER_ID_BYTES", "300"), ("CARBONSTORE_LOG_LEVEL", "loud"),
        ("CARBONSTORE_API_KEYS", "write:abc"),
        ("CARBONSTORE_API_KEYS", "owner:" + String(repeating: "a", count: 64)),
        ("CARBONSTORE_API_KEYS", "csk_notanentry"),
    ])
    func aBadValueIsNamed(_ name: String, _ value: String) throws {
        let error = try #require(throws: ServerConfiguration.InvalidSettingError.self) {
            try Self.configuration([name: value])
        }
        #expect(error.name == name)
        #expect(error.kind == .invalidInput)
        #expect(error.description.contains("for example"))
        // A key given by mistake instead of its entry is never echoed.
        #expect(!error.description.contains("csk_notanentry"))
    }

    @Test func keysAreRandomAndWellFormed() {
        let a = APIKeys.newKey(role: .read)
        let b = APIKeys.newKey(role: .read)
        #expect(a.key != b.key)
        #expect(a.key.hasPrefix("csk_") && a.key.count == 47)
        #expect(a.key.dropFirst(4).allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" })
        #expect(a.entry.entry.hasPrefix("read:") && a.entry.entry.count == 5 + 64)
        #expect(a.entry.keyID.count == 8)
        #expect(Role.read < Role.write && Role.write < Role.admin)
    }

    /// Windows line ends and a byte order mark, as an editor may save the key file.
    @Test func aKeyFileWithCRLFLineEndsIsRead() throws {
        let admin = APIKeys.newKey(role: .admin)
        let write = APIKeys.newKey(role: .write)
        let file = "\u{FEFF}# admin keys\r\n\r\n\(admin.entry.entry)  # ops\r\n\(write.entry.entry)\r\n"
        let c = try Self.configuration(["CARBONSTORE_API_KEYS_FILE": "/keys"], file: file)
        #expect(c.keys.entries == [admin.entry, write.entry])
    }
}
