package dev.strata;

import static com.tngtech.archunit.lang.syntax.ArchRuleDefinition.noClasses;

import com.tngtech.archunit.base.DescribedPredicate;
import com.tngtech.archunit.core.domain.JavaCall;
import com.tngtech.archunit.core.domain.JavaClasses;
import com.tngtech.archunit.core.importer.ClassFileImporter;
import com.tngtech.archunit.core.importer.ImportOption;
import java.util.Set;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** Keeps the package arrows of STYLE.md true: inner layers never reach outward. */
class ArchitectureTest {
    private static JavaClasses classes;

    @BeforeAll
    static void load() {
        classes = new ClassFileImporter()
                .withImportOption(ImportOption.Predefined.DO_NOT_INCLUDE_TESTS)
                .importPackages("dev.strata");
    }

    /** The JDK calls that open a file's contents (for reading or writing) or create a file. */
    private static final DescribedPredicate<JavaCall<?>> OPENS_A_FILE =
            new DescribedPredicate<>(
                    "open a file's contents (FileChannel.open, RandomAccessFile, file streams, Files.newByteChannel ...)") {
                private static final Set<String> FILES_OPENERS = Set.of(
                        "newByteChannel",
                        "newInputStream",
                        "newOutputStream",
                        "readAllBytes",
                        "write",
                        "copy",
                        "lines");

                @Override
                public boolean test(JavaCall<?> call) {
                    String name = call.getTarget().getName();
                    return switch (call.getTargetOwner().getName()) {
                        case "java.nio.channels.FileChannel", "java.nio.channels.AsynchronousFileChannel" ->
                            name.equals("open");
                        case "java.io.RandomAccessFile", "java.io.FileInputStream", "java.io.FileOutputStream" ->
                            name.equals("<init>");
                        case "java.nio.file.Files" -> FILES_OPENERS.contains(name);
                        default -> false;
                    };
                }
            };

    /**
     * Image files are opened in one place: the file protocol driver's opener, which always takes
     * QEMU's image lock. Everything else (img commands, the check, image creation, the daemon,
     * backups) opens a file node through the block graph, so no command can read or repair an
     * image another process is writing. The pidfile and sockets are written without opening a
     * channel (Files.writeString, socket binds) and stay allowed.
     */
    @Test
    void imageFilesAreOpenedOnlyByTheFileDriversOpener() {
        noClasses()
                .that()
                .doNotHaveFullyQualifiedName("dev.strata.block.file.FileOpening")
                .should()
                .callCodeUnitWhere(OPENS_A_FILE)
                .because("every image file is opened through a file node, which takes QEMU's image lock")
                .check(classes);
    }

    @Test
    void bitmapDependsOnNothingInStrata() {
        noClasses()
                .that()
                .resideInAPackage("dev.strata.bitmap..")
                .should()
                .dependOnClassesThat()
                .resideInAnyPackage("dev.strata.block..", "dev.strata.img..", "dev.strata.daemon..", "dev.strata.qmp..")
                .allowEmptyShould(true)
                .check(classes);
    }

    @Test
    void blockCoreKnowsNoDriverNoCliNoJson() {
        noClasses()
                .that()
                .resideInAPackage("dev.strata.block")
                .should()
                .dependOnClassesThat()
                .resideInAnyPackage(
                        "dev.strata.block.file..",
                        "dev.strata.block.raw..",
                        "dev.strata.block.qcow2..",
                        "dev.strata.block.mem..",
                        "dev.strata.block.drivers..",
                        "dev.strata.img..",
                        "dev.strata.daemon..",
                        "com.fasterxml.jackson..",
                        "picocli..")
                .check(classes);
    }

    @Test
    void driversNeverSeeJsonOrTheCli() {
        noClasses()
                .that()
                .resideInAnyPackage("dev.strata.block..")
                .should()
                .dependOnClassesThat()
                .resideInAnyPackage(
                        "dev.strata.img..",
                        "dev.strata.daemon..",
                        "dev.strata.qmp..",
                        "dev.strata.nbd..",
                        "com.fasterxml.jackson..",
                        "picocli..")
                .check(classes);
    }

    @Test
    void driversDoNotDependOnEachOther() {
        for (String driver : new String[] {"file", "raw", "qcow2", "mem"}) {
            String[] others = java.util.stream.Stream.of("file", "raw", "qcow2", "mem")
                    .filter(d -> !d.equals(driver))
                    .map(d -> "dev.strata.block." + d + "..")
                    .toArray(String[]::new);
            noClasses()
                    .that()
                    .resideInAPackage("dev.strata.block." + driver + "..")
                    .should()
                    .dependOnClassesThat()
                    .resideInAnyPackage(others)
                    .allowEmptyShould(true)
                    .check(classes);
        }
    }

    @Test
    void qmpProtocolAndSchemaKnowNoBlockLayerAndNoDaemon() {
        noClasses()
                .that()
                .resideInAnyPackage("dev.strata.qmp", "dev.strata.json..", "dev.strata.qmp.schema..")
                .should()
                .dependOnClassesThat()
                .resideInAnyPackage("dev.strata.block..", "dev.strata.daemon..", "dev.strata.img..", "picocli..")
                .check(classes);
    }

    @Test
    void qmpCommandsAreNotTheDaemon() {
        noClasses()
                .that()
                .resideInAPackage("dev.strata.qmp..")
                .should()
                .dependOnClassesThat()
                .resideInAnyPackage("dev.strata.daemon..", "dev.strata.img..", "picocli..")
                .check(classes);
    }

    @Test
    void jsonKnowsNothingOfStrata() {
        noClasses()
                .that()
                .resideInAPackage("dev.strata.json..")
                .should()
                .dependOnClassesThat()
                .resideInAnyPackage(
                        "dev.strata.block..",
                        "dev.strata.qmp..",
                        "dev.strata.daemon..",
                        "dev.strata.img..",
                        "dev.strata.nbd..",
                        "dev.strata.job..")
                .check(classes);
    }

    @Test
    void jobKnowsNothingOfStrata() {
        noClasses()
                .that()
                .resideInAPackage("dev.strata.job..")
                .should()
                .dependOnClassesThat()
                .resideInAnyPackage(
                        "dev.strata.block..",
                        "dev.strata.backup..",
                        "dev.strata.txn..",
                        "dev.strata.qmp..",
                        "dev.strata.daemon..",
                        "dev.strata.img..")
                .check(classes);
    }

    @Test
    void backupUsesOnlyTheBlockLayerAndJobs() {
        noClasses()
                .that()
                .resideInAPackage("dev.strata.backup..")
                .should()
                .dependOnClassesThat()
                .resideInAnyPackage(
                        "dev.strata.txn..",
                        "dev.strata.qmp..",
                        "dev.strata.daemon..",
                        "dev.strata.img..",
                        "dev.strata.block.file..",
                        "dev.strata.block.raw..",
                        "dev.strata.block.qcow2..")
                .check(classes);
    }

    @Test
    void transactionsKnowNoQmp() {
        noClasses()
                .that()
                .resideInAPackage("dev.strata.txn..")
                .should()
                .dependOnClassesThat()
                .resideInAnyPackage("dev.strata.qmp..", "dev.strata.daemon..", "dev.strata.img..")
                .check(classes);
    }

    @Test
    void nbdKnowsOnlyTheBlockLayer() {
        noClasses()
                .that()
                .resideInAPackage("dev.strata.nbd..")
                .should()
                .dependOnClassesThat()
                .resideInAnyPackage(
                        "dev.strata.qmp..",
                        "dev.strata.daemon..",
                        "dev.strata.img..",
                        "dev.strata.block.file..",
                        "dev.strata.block.raw..",
                        "dev.strata.block.qcow2..",
                        "com.fasterxml.jackson..",
                        "picocli..")
                .check(classes);
    }
}
