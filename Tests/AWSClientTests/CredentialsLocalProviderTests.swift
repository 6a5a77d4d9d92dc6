import AWSClient
import AWSSigning
import CarbonStoreTestSupport
import Foundation
import Testing

@Suite("Environment credentials")
struct CredentialsEnvironmentTests {
    @Test func readsKeysAndToken() throws {
        let p = EnvironmentCredentialProvider(environment: [
            "AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_SESSION_TOKEN": "tok",
        ])
        let c = try p.resolve()
        #expect(c == AWSCredentials(accessKeyID: "AKIDENV", secretAccessKey: "secret", sessionToken: "tok"))
    }

    @Test func unsetIsNotConfigured() async {
        let error = await #expect(throws: CredentialsError.self) {
            try await EnvironmentCredentialProvider(environment: ["AWS_ACCESS_KEY_ID": "  "]).credentials()
        }
        #expect(error?.kind == .notConfigured)
        #expect(error?.problem == "AWS_ACCESS_KEY_ID unset")
    }

    @Test func keyWithoutSecretNamesTheMissingOne() {
        let e1 = #expect(throws: CredentialsError.self) {
            try EnvironmentCredentialProvider(environment: ["AWS_ACCESS_KEY_ID": "AKID"]).resolve()
        }
        #expect(e1?.kind == .invalidConfiguration)
        #expect(e1?.description.contains("AWS_SECRET_ACCESS_KEY is unset") == true)
        let e2 = #expect(throws: CredentialsError.self) {
            try EnvironmentCredentialProvider(environment: ["AWS_SECRET_ACCESS_KEY": "s"]).resolve()
        }
        #expect(e2?.description.contains("AWS_ACCESS_KEY_ID is unset") == true)
        #expect(e2?.description.contains("\n") == false)
    }
}

@Suite("Profile credentials and shared files")
struct CredentialsProfileTests {
    @Test func defaultProfileFromCredentialsFileWithCommentsAndWhitespace() throws {
        let home = try makeHome()
        defer { home.remove() }
        try write(
            """
            # a comment
            ; another comment

              [ default ]   # trailing comment
            aws_access_key_id=AKIDDEFAULT
              aws_secret_access_key   =   s3cr/t+Key ; inline comment
            AWS_SESSION_TOKEN = tok==

            [other]
            aws_access_key_id = AKIDOTHER
            aws_secret_access_key = other
            """, to: home.path + "/.aws/credentials")
        let c = try ProfileCredentialProvider(environment: ["HOME": home.path]).resolve()
        #expect(c.accessKeyID == "AKIDDEFAULT")
        #expect(c.secretAccessKey == "s3cr/t+Key")
        #expect(c.sessionToken == "tok==")
        #expect(c.expiration == nil)
    }

    @Test func namedProfileFromConfigFileWithRegion() throws {
        let home = try makeHome()
        defer { home.remove() }
        try write(
            """
            [default]
            region = us-east-1
            [profile dev]
            region = eu-central-1
            aws_access_key_id = AKIDDEV
            aws_secret_access_key = devsecret
            s3 =
              addressing_style = path
            [dev]
            region = ignored-without-profile-prefix
            [sso-session corp]
            sso_region = us-east-1
            """, to: home.path + "/.aws/config")
        let env = ["HOME": home.path, "AWS_PROFILE": "dev"]
        let p = ProfileCredentialProvider(environment: env)
        #expect(try p.resolve().accessKeyID == "AKIDDEV")
        #expect(p.region() == "eu-central-1")
        #expect(p.value("addressing_style") == nil)
        #expect(ProfileCredentialProvider(environment: ["HOME": home.path]).region() == "us-east-1")
    }

    @Test func credentialsFileWinsOverConfigForTheSameProfile() throws {
        let home = try makeHome()
        defer { home.remove() }
        try write(
            "[profile dev]\naws_access_key_id = FROMCONFIG\naws_secret_access_key = c\nregion = ap-south-1\n",
            to: home.path + "/.aws/config")
        try write(
            "[dev]\naws_access_key_id = FROMCREDS\naws_secret_access_key = k\n",
            to: home.path + "/.aws/credentials")
        let p = ProfileCredentialProvider(environment: ["HOME": home.path, "AWS_PROFILE": "dev"])
        let c = try p.resolve()
        #expect(c.accessKeyID == "FROMCREDS")
        #expect(c.secretAccessKey == "k")
        #expect(p.region() == "ap-south-1")
    }

    @Test func fileLocationsFromEnvironment() throws {
        let dir = try makeHome()
        defer { dir.remove() }
        try write("[ci]\naws_access_key_id=AKIDCI\naws_secret_access_key=x\n", to: dir.path + "/creds.ini")
        try write("[profile ci]\nregion=sa-east-1\n", to: dir.path + "/conf.ini")
        let p = ProfileCredentialProvider(environment: [
            "AWS_SHARED_CREDENTIALS_FILE": dir.path + "/creds.ini", "AWS_CONFIG_FILE": dir.path + "/conf.ini",
            "AWS_PROFILE": "ci",
        ])
        #expect(try p.resolve().accessKeyID == "AKIDCI")
        #expect(p.region() == "sa-east-1")
        #expect(p.credentialsFilePath == dir.path + "/creds.ini")
    }

    @Test func missingNamedProfileIsAnErrorNotAFallThrough() async throws {
        let home = try makeHome()
        defer { home.remove() }
        try write(
            "[default]\naws_access_key_id=A\naws_secret_access_key=B\n", to: home.path + "/.aws/credentials")
        let error = await #expect(throws: CredentialsError.self) {
            try await ProfileCredentialProvider(environment: ["HOME": home.path, "AWS_PROFILE": "prod"])
                .credentials()
        }
        #expect(error?.kind == .invalidConfiguration)
        #expect(error?.description.contains("profile 'prod'") == true)
        #expect(error?.description.contains("AWS_PROFILE") == true)
    }

    @Test func absentFilesAreNotConfigured() {
        let error = #expect(throws: CredentialsError.self) {
            try ProfileCredentialProvider(environment: ["HOME": "/nonexistent-home"]).resolve()
        }
        #expect(error?.kind == .notConfigured)
        #expect(error?.problem == "/nonexistent-home/.aws/credentials not found")
    }

    @Test func defaultProfileWithOnlySettingsIsNotConfigured() throws {
        let home = try makeHome()
        defer { home.remove() }
        try write("[default]\nregion = eu-west-1\noutput = json\n", to: home.path + "/.aws/config")
        let error = #expect(throws: CredentialsError.self) {
            try ProfileCredentialProvider(environment: ["HOME": home.path]).resolve()
        }
        #expect(error?.kind == .notConfigured)
    }

    @Test func halfAKeyPairAndUnsupportedSettingsAreErrors() throws {
        let home = try makeHome()
        defer { home.remove() }
        try write(
            "[default]\naws_access_key_id = AKID\n[assume]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = default\n",
            to: home.path + "/.aws/credentials")
        let half = #expect(throws: CredentialsError.self) {
            try ProfileCredentialProvider(environment: ["HOME": home.path]).resolve()
        }
        #expect(half?.kind == .invalidConfiguration)
        #expect(half?.description.contains("aws_secret_access_key missing") == true)
        let role = #expect(throws: CredentialsError.self) {
            try ProfileCredentialProvider(environment: ["HOME": home.path, "AWS_PROFILE": "assume"]).resolve()
        }
        #expect(role?.description.contains("role_arn") == true)
    }

    @Test func parserToleratesOddInput() {
        let file = SharedConfigFile.parse(
            """
            stray = before any section
            [broken
            key = lost
            [profile  spaced   name ]
            a=1
            b = two words # comment
            c = has#hash
            =novalue
            [profile spaced name]
            d = 4
            """, kind: .config)
        #expect(file.sections.keys.sorted() == ["spaced name"])
        #expect(file.sections["spaced name"] == ["a": "1", "b": "two words", "c": "has#hash", "d": "4"])
    }
}
