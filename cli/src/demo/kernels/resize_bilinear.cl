
__kernel void resize_bilinear_nocache(__global const DATA_TYPE *input,  /* [channels, h, w] */
                                      __global DATA_TYPE *output,
                                      const float height_scale,
                                      const float width_scale,
                                      const int in_height,
                                      const int in_width,
                                      const int out_height,
                                      const int out_width,
                                      const int half_pixel_centers) {
  const int ow = get_global_id(0);
  const int oh = get_global_id(1);
  const int c = get_global_id(2);
  if (ow >= out_width || oh >= out_height) return;
  const float h_in = half_pixel_centers ? ((float)oh + 0.5f) * height_scale - 0.5f
                                        : (float)oh * height_scale;
  const float w_in = half_pixel_centers ? ((float)ow + 0.5f) * width_scale - 0.5f
                                        : (float)ow * width_scale;
  const int h_lower = max(0, (int)floor(h_in));
  const int w_lower = max(0, (int)floor(w_in));
  const int h_upper = min(in_height - 1, h_lower + 1);
  const int w_upper = min(in_width - 1, w_lower + 1);
  const float h_lerp = h_in - floor(h_in);
  const float w_lerp = w_in - floor(w_in);
  __global const DATA_TYPE *in = input + c * in_height * in_width;
  const DATA_TYPE top_left = in[h_lower * in_width + w_lower];
  const DATA_TYPE top_right = in[h_lower * in_width + w_upper];
  const DATA_TYPE bottom_left = in[h_upper * in_width + w_lower];
  const DATA_TYPE bottom_right = in[h_upper * in_width + w_upper];
  const DATA_TYPE top = mad(top_right - top_left, w_lerp, top_left);
  const DATA_TYPE bottom = mad(bottom_right - bottom_left, w_lerp, bottom_left);
  output[(c * out_height + oh) * out_width + ow] = mad(bottom - top, h_lerp, top);
}
