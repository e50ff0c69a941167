package dev.strata;

import static com.tngtech.archunit.lang.syntax.ArchRuleDefinition.noClasses;

import com.tngtech.archunit.core.domain.JavaClasses;
import com.tngtech.archunit.core.importer.ClassFileImporter;
import com.tngtech.archunit.core.importer.ImportOption;
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
                .resideInAnyPackage("dev.strata.qmp", "dev.strata.qmp.json..", "dev.strata.qmp.schema..")
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
