package dev.strata.block;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.Map;
import org.junit.jupiter.api.Test;

class BlockOptionsTest {
    @Test
    void dottedKeysBuildTheSameTreeAsJson() {
        BlockOptions kv = BlockOptions.parseKeyValue(
                "driver=qcow2,node-name=drive0,file.driver=file,file.filename=disk.qcow2", null);
        BlockOptions json = BlockOptions.fromMap(Map.of(
                "driver", "qcow2",
                "node-name", "drive0",
                "file", Map.of("driver", "file", "filename", "disk.qcow2")));
        assertThat(kv.requireString("driver")).isEqualTo(json.requireString("driver"));
        assertThat(kv.child("file").orElseThrow().requireString("filename"))
                .isEqualTo(json.child("file").orElseThrow().requireString("filename"))
                .isEqualTo("disk.qcow2");
    }

    @Test
    void doubledCommaIsALiteralComma() {
        BlockOptions o = BlockOptions.parseKeyValue("driver=file,filename=a,,b.img", null);
        assertThat(o.requireString("filename")).isEqualTo("a,b.img");
    }

    @Test
    void impliedKeyTakesALeadingBareValue() {
        BlockOptions o = BlockOptions.parseKeyValue("nbd,id=e0", "type");
        assertThat(o.requireString("type")).isEqualTo("nbd");
        assertThat(o.requireString("id")).isEqualTo("e0");
    }

    @Test
    void booleansAndNumbersAcceptQemuSpellings() {
        BlockOptions o = BlockOptions.parseKeyValue("a=on,b=off,c=true,size=64k", null);
        assertThat(o.bool("a", false)).isTrue();
        assertThat(o.bool("b", true)).isFalse();
        assertThat(o.bool("c", false)).isTrue();
        assertThat(o.number("size", 0)).isEqualTo(65536);
        assertThat(BlockOptions.fromMap(Map.of("size", 512)).number("size", 0)).isEqualTo(512);
    }

    @Test
    void malformedInputIsRefusedWithQemusWords() {
        assertThatThrownBy(() -> BlockOptions.parseKeyValue("driver", null))
                .hasMessage("Expected '=' after parameter 'driver'");
        assertThatThrownBy(() -> BlockOptions.parseKeyValue("file=x,file.driver=file", null))
                .hasMessageContaining("used inconsistently");
        BlockOptions maybe = BlockOptions.parseKeyValue("a=maybe", null);
        assertThatThrownBy(() -> maybe.bool("a", false)).hasMessage("Parameter 'a' expects 'on' or 'off'");
    }

    @Test
    void unreadKeysAreReported() {
        BlockOptions o = BlockOptions.parseKeyValue("driver=raw,bogus=1", null);
        o.requireString("driver");
        assertThat(o.unusedKeys()).containsExactly("bogus");
    }

    @Test
    void sizesParseSuffixesAndRefuseGarbage() {
        assertThat(Sizes.parse("1G", "size")).isEqualTo(1L << 30);
        assertThat(Sizes.parse("1.5M", "size")).isEqualTo(3L << 19);
        assertThat(Sizes.parse("512", "size")).isEqualTo(512);
        assertThatThrownBy(() -> Sizes.parse("-1", "size")).isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> Sizes.parse("99999999999E", "size")).isInstanceOf(IllegalArgumentException.class);
        assertThat(Sizes.human(64L << 20)).isEqualTo("64 MiB");
        assertThat(Sizes.human(1536L << 20)).isEqualTo("1.5 GiB");
    }
}
