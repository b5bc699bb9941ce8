
#define VEC_DATA_TYPE_STR(data_type, size) data_type##size
#define VEC_DATA_TYPE(data_type, size) VEC_DATA_TYPE_STR(data_type, size)
#define DATA_TYPE4 VEC_DATA_TYPE(DATA_TYPE, 4)
#define CMD_TYPE_STR(cmd, type) cmd##type
#define CMD_TYPE(cmd, type) CMD_TYPE_STR(cmd, type)

inline DATA_TYPE4 do_activation(DATA_TYPE4 in, const float relux_max_limit) {
#if defined(USE_RELU)
  return fmax(in, (DATA_TYPE4)0);
#elif defined(USE_RELUX)
  return clamp(in, (DATA_TYPE4)0, (DATA_TYPE4)relux_max_limit);
#elif defined(USE_TANH)
  return tanh(in);
#elif defined(USE_SIGMOID)
  return (DATA_TYPE4)1 / ((DATA_TYPE4)1 + exp(-in));
#else
  return in;
#endif
}
