package dev.strata.json;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/** Parsing of one complete JSON text, for declarations and tests (sessions use {@link JsonStreamer}). */
public final class Json {
    private Json() {}

    /** Parses exactly one value, with QMP's grammar; refuses anything else with QEMU's message. */
    public static Object parse(String text) {
        List<Object> values = new ArrayList<>();
        List<String> errors = new ArrayList<>();
        JsonStreamer streamer = new JsonStreamer(new JsonStreamer.Sink() {
            @Override
            public void value(Object json) {
                values.add(json);
            }

            @Override
            public void error(String message) {
                errors.add(message);
            }
        });
        byte[] bytes = text.getBytes(StandardCharsets.UTF_8);
        streamer.feed(bytes, 0, bytes.length);
        streamer.flush();
        if (!errors.isEmpty()) {
            throw new IllegalArgumentException(errors.getFirst());
        }
        if (values.isEmpty()) {
            throw new IllegalArgumentException("Expecting a JSON value");
        }
        if (values.size() != 1) {
            throw new IllegalArgumentException("expected one JSON value, found " + values.size());
        }
        return values.getFirst();
    }
}
